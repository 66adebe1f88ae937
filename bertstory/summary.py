"""``python -m bertstory.summary``: see :mod:`bertstory.results.summary`."""

from bertstory.results.summary import main

if __name__ == "__main__":
    main()
