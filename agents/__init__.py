"""The bundled LLM agent: GRPO, DAPO, GRPO+Entropy and MEDS training of a causal LM on meds-gym.

Run from a clone: ``python -m agents.compare`` (the main job: DAPO+MEDS against DAPO from the same
warmed-up tiny model, ending with ``report.md`` and a pass@k plot), ``python -m agents.ppo --help``
(training), ``python -m agents.evaluate --help`` (pass@k and error modes of a model),
``python -m agents.tiny_model --help`` (build the offline default model). After
``pip install 'meds-gym[agents]'`` the same scripts run from anywhere as ``meds-gym-compare``,
``meds-gym-train`` and ``meds-gym-evaluate``: the folder is installed as the package
``meds_gym_agents`` (``agents`` is a top-level name other distributions take), which is why the
modules import each other relatively. The shared pieces are plain modules: ``losses``
(advantages and policy losses), ``evaluation`` (pass@k, diversity, cluster agreement),
``fingerprint`` (the MEDS answer fingerprint taken during the log-prob pass), ``policy`` (loading
a model, sampling and scoring responses), ``sampling`` (the cached sampler and the shared-prompt
forward), ``run_setup`` (the env, model and evaluation loop every entry point builds the same
way), ``checkpoint`` (resume on any device, bit-exact on the CPU), ``report`` (the markdown
table and pass@k plot of a run) and ``tiny_model`` (the character tokenizer and tiny model).
"""

from __future__ import annotations

SCRIPTS = {"meds-gym-train": "ppo", "meds-gym-compare": "compare", "meds-gym-evaluate": "evaluate"}
"""Console script -> the module it runs as ``__main__`` (declared in ``pyproject.toml``)."""


def _run_script(module: str) -> None:
    """Run ``<this package>.<module>`` as ``python -m`` would, keeping the console script's argv.

    The module runs as ``__main__`` (registered in ``sys.modules`` while it runs, so that tyro
    resolves the annotations of its ``Args``); ``sys.argv[0]`` stays the script's name, which
    the usage line and ``report.md``'s command then show.
    """
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec(f"{__name__}.{module}")
    if spec is None or spec.loader is None or not hasattr(spec.loader, "get_code"):
        raise ImportError(f"cannot find the module {__name__}.{module} to run")
    code = spec.loader.get_code(spec.name)
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __spec__=spec, __file__=spec.origin, __package__=__name__, __loader__=spec.loader
    )
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        sys.modules["__main__"] = saved


def train_cli() -> None:
    """``meds-gym-train``: the training script (``python -m agents.ppo``)."""
    _run_script("ppo")


def compare_cli() -> None:
    """``meds-gym-compare``: the main job (``python -m agents.compare``)."""
    _run_script("compare")


def evaluate_cli() -> None:
    """``meds-gym-evaluate``: pass@k and error modes of a model (``python -m agents.evaluate``)."""
    _run_script("evaluate")
