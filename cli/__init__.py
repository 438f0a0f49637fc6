"""querylearn command-line interface (typer). ``querylearn.cli.main:main`` is the console script."""
