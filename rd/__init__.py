"""rd: internalizing context into a language model's weights, in JAX."""
