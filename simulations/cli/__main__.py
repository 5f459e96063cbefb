"""`python -m simulations.cli` runs the `medfed` command."""

from simulations.cli.main import main

main()
