"""The second half of JaxMARL's registry (``jaxmarl_cases.SECOND_HALF``: SMAX, STORM, Hanabi, JaxNav, ...),
built, played and trained as ``test_jaxmarl_envs.py`` does the first half; a file of its own so that
pytest-xdist's ``--dist loadfile`` runs the two halves on two workers."""
import pytest

from jaxmarl_cases import SECOND_HALF, check_builds_steps_and_trains


@pytest.mark.parametrize("name", SECOND_HALF)
def test_jaxmarl_env_builds_steps_and_trains(name):
    check_builds_steps_and_trains(name)
