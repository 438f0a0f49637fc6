"""``python -m querylearn ...`` (what ``torchrun -m querylearn train-sequence ...`` runs): the CLI."""

from querylearn.cli.main import main

if __name__ == "__main__":
    main()
