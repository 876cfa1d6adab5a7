"""Generated task families shared by the methods and the tests (each a deterministic generator)."""
