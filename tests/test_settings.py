"""The engine's switches (stackrnn/settings.py): read from the environment once, changeable from Python."""

import pytest

from stackrnn import kernels, settings


def test_the_environment_gives_the_defaults():
    assert settings.from_environment({}) == {"kernels": "auto", "matmul": "auto"}
    for value, kernels_choice in (("1", "auto"), ("0", "off"), ("False", "off"), ("no", "off"), ("off", "off"),
                                  (" steps ", "steps")):
        assert settings.from_environment({"STACKRNN_KERNELS": value})["kernels"] == kernels_choice, value
    for value, choice in (("", "auto"), ("Torch", "torch"), ("compiled", "compiled")):
        assert settings.from_environment({"STACKRNN_MATMUL": value})["matmul"] == choice, value


def test_a_switch_refuses_what_it_does_not_know_and_names_its_choices():
    with pytest.raises(ValueError, match=r"stackrnn.settings.kernels is 'on': use one of auto, steps, off"):
        settings.kernels = "on"
    with pytest.raises(ValueError, match=r"stackrnn.settings.gemm: expected True or False, got 0"):
        settings.gemm = 0
    with pytest.raises(ValueError, match=r"stackrnn.settings has no kernel: use kernels, matmul, gemm, pool"):
        with settings.use(kernel="off"):
            pass


def test_use_sets_switches_for_a_block_and_puts_them_back():
    before = settings.kernels, settings.matmul
    with settings.use(kernels="off", matmul="torch"):
        assert (settings.kernels, settings.matmul) == ("off", "torch")
        assert kernels.steps() is None  # the engine reads the switch where it decides, not once at import
    assert (settings.kernels, settings.matmul) == before
    with pytest.raises(RuntimeError), settings.use(kernels="steps"):
        raise RuntimeError
    assert settings.kernels == before[0]
