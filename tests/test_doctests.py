"""Every example in the package's docstrings runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import meds_gym
from meds_gym.errors import MissingExtraError

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(meds_gym.__path__, "meds_gym.")
    if not name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    try:
        module = importlib.import_module(name)
    except MissingExtraError as error:  # an integration whose extra is not installed here
        pytest.skip(str(error))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
