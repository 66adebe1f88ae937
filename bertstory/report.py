"""``python -m bertstory.report``: see :mod:`bertstory.results.report`."""

from bertstory.results.report import main

if __name__ == "__main__":
    main()
