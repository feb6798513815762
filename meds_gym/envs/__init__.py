"""Text Gymnasium environments with verifiable rewards, and the registered ``meds_gym/*`` ids."""

from meds_gym.charset import TEXT_CHARSET
from meds_gym.envs.problem_env import ProblemEnv, problem_env
from meds_gym.envs.reasoning_env import (
    DEFAULT_PROMPT_TEMPLATE,
    SYSTEM_INSTRUCTION,
    ReasoningEnv,
    VerdictCache,
)
from meds_gym.envs.registration import (
    BENCHMARK_ENV_IDS,
    DATASET_ENV_ID,
    TOY_ENV_IDS,
    TRAP_GRID_ENV_ID,
    make_benchmark_env,
    make_dataset_env,
    make_toy_env,
    register_envs,
)

__all__ = [
    "BENCHMARK_ENV_IDS",
    "DATASET_ENV_ID",
    "DEFAULT_PROMPT_TEMPLATE",
    "SYSTEM_INSTRUCTION",
    "TEXT_CHARSET",
    "TOY_ENV_IDS",
    "TRAP_GRID_ENV_ID",
    "ProblemEnv",
    "ReasoningEnv",
    "VerdictCache",
    "make_benchmark_env",
    "make_dataset_env",
    "make_toy_env",
    "problem_env",
    "register_envs",
]
