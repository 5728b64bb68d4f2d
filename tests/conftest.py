"""Shared fixtures: the in-place build is imported from the repository root,
and test files are written by astropy and fitsio into a temporary folder."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torchfits_ops  # noqa: E402,F401  (fails loudly if the build is missing)


@pytest.fixture(scope="session")
def datadir(tmp_path_factory):
    return tmp_path_factory.mktemp("fits")


@pytest.fixture(autouse=True)
def _restore_options():
    """Each test starts with the settings it found, whatever it set."""
    saved = torchfits_ops.options()
    yield
    for name, value in saved.items():
        torchfits_ops._ops.set_option(name, value)
