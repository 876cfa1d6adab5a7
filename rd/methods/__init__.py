"""The methods: one package each, holding its job, its data generator and what only it uses."""
