"""Shared pytest settings for tests/.

`--docs-out DIR` keeps the docs site that tests/test_docs.py builds (default: a temp folder that pytest
cleans up), to open it afterwards: `python -m http.server -d DIR`."""


def pytest_addoption(parser):
    parser.addoption("--docs-out", default=None, metavar="DIR",
                     help="build the docs site for tests/test_docs.py into DIR and keep it")
