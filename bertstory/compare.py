"""``python -m bertstory.compare``: see :mod:`bertstory.results.compare`."""

from bertstory.results.compare import main

if __name__ == "__main__":
    main()
