"""Without the ``verifiers`` extra (or below Python 3.11), the integration names the extra."""

import importlib
import sys

import pytest

from meds_gym.errors import MissingExtraError


def test_missing_extra_names_the_verifiers_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "verifiers", None)  # makes `import verifiers` fail
    monkeypatch.setitem(sys.modules, "verifiers.v1", None)
    monkeypatch.delitem(sys.modules, "meds_gym.integrations.verifiers", raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'meds-gym\[verifiers\]'") as info:
        importlib.import_module("meds_gym.integrations.verifiers")
    assert "Python >= 3.11" in str(info.value)
