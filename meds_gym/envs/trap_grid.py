"""TrapGrid: a small grid world whose failures fall into a few distinct, recurring modes.

MEDS is not only for language models: any env whose episodes end in success or failure can have a
policy that keeps failing the same way. :class:`TrapGridEnv` makes such modes explicit. An episode
ends in exactly one of five outcomes, reported in ``info["failure_mode"]`` at the last step:

- ``"success"``: the agent reached the goal (reward ``goal_reward``),
- ``"lava"``: it stepped on one of the many lava cells (reward ``trap_reward``),
- ``"pit"``: it fell into one of the few pits (reward ``trap_reward``),
- ``"wrong_exit"``: it left through the decoy exit placed near the start (reward
  ``wrong_exit_reward``, positive: a tempting local optimum that is still a failure),
- ``"timeout"``: it wandered for ``max_steps`` steps (truncated, reward 0).

A random policy mostly ends in lava (there is much more lava than anything else); a partly trained
policy learns that the nearby decoy pays and then mostly ends at the wrong exit. Both are the kind
of dominant, recurring failure mode that MEDS penalises.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from meds_gym.errors import InvalidArgumentError

Cell = tuple[int, int]
"""A grid cell ``(row, column)``."""

FAILURE_MODES: tuple[str, ...] = ("lava", "pit", "wrong_exit", "timeout")
"""Every failure mode of :class:`TrapGridEnv`, in a fixed order."""

OUTCOMES: tuple[str, ...] = ("success", *FAILURE_MODES)
"""Every value ``info["failure_mode"]`` takes at the end of an episode."""

CHANNELS: tuple[str, ...] = ("agent", "goal", "lava", "pit", "wrong_exit")
"""Channels of the ``"grid"`` observation, in order."""

ACTIONS: tuple[Cell, ...] = ((-1, 0), (0, 1), (1, 0), (0, -1))
"""Moves of the four actions: 0 up, 1 right, 2 down, 3 left."""

_MAX_TRIES = 1000


@dataclass(frozen=True)
class TrapGridLayout:
    """One grid: where the agent starts and where the goal, traps and decoy exit are.

    Attributes:
        size: Side of the square grid.
        start: The agent's start cell.
        goal: The goal cell.
        wrong_exit: The decoy exit.
        lava: Lava cells.
        pits: Pit cells.
    """

    size: int
    start: Cell
    goal: Cell
    wrong_exit: Cell
    lava: frozenset[Cell]
    pits: frozenset[Cell]

    def outcome_at(self, cell: Cell) -> str | None:
        """The outcome that entering ``cell`` ends the episode with, or ``None`` if it is safe."""
        if cell == self.goal:
            return "success"
        if cell == self.wrong_exit:
            return "wrong_exit"
        if cell in self.lava:
            return "lava"
        if cell in self.pits:
            return "pit"
        return None

    def shortest_path(self, target: Cell) -> list[Cell] | None:
        """Cells from the start to ``target`` through safe cells only (BFS), or ``None``.

        The start is not part of the path; ``target`` is its last cell.
        """
        previous: dict[Cell, Cell] = {self.start: self.start}
        queue: deque[Cell] = deque([self.start])
        while queue:
            cell = queue.popleft()
            if cell == target:
                path = []
                while cell != self.start:
                    path.append(cell)
                    cell = previous[cell]
                return path[::-1]
            if cell != self.start and self.outcome_at(cell) is not None:
                continue  # the episode would end here: no path goes through it
            for dr, dc in ACTIONS:
                nxt = (cell[0] + dr, cell[1] + dc)
                inside = 0 <= nxt[0] < self.size and 0 <= nxt[1] < self.size
                if inside and nxt not in previous:
                    previous[nxt] = cell
                    queue.append(nxt)
        return None


def _manhattan(a: Cell, b: Cell) -> int:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def generate_layout(
    rng: np.random.Generator, size: int = 7, num_lava: int | None = None, num_pits: int = 2
) -> TrapGridLayout:
    """Draw a solvable layout: every outcome can be reached from the start by safe cells.

    The goal lies at least ``size - 1`` steps from the start, the decoy exit 2 or 3 steps from it,
    so the decoy is found first.

    Args:
        rng: Source of randomness.
        size: Side of the grid (>= 5).
        num_lava: Lava cells; ``size`` when ``None``.
        num_pits: Pit cells.

    Returns:
        The layout.
    """
    lava_count = size if num_lava is None else num_lava
    cells = [(r, c) for r in range(size) for c in range(size)]
    for _ in range(_MAX_TRIES):
        order = rng.permutation(len(cells))
        start = cells[int(order[0])]
        far = [cells[i] for i in order[1:] if _manhattan(cells[i], start) >= size - 1]
        near = [cells[i] for i in order[1:] if 2 <= _manhattan(cells[i], start) <= 3]
        if not far or not near:
            continue
        goal, wrong_exit = far[0], near[0]
        rest = [cells[i] for i in order[1:] if cells[i] not in (goal, wrong_exit)]
        lava = frozenset(rest[:lava_count])
        pits = frozenset(rest[lava_count : lava_count + num_pits])
        layout = TrapGridLayout(size, start, goal, wrong_exit, lava, pits)
        reachable = (
            layout.shortest_path(goal) is not None
            and layout.shortest_path(wrong_exit) is not None
            and any(layout.shortest_path(cell) is not None for cell in lava)
            and (num_pits == 0 or any(layout.shortest_path(cell) is not None for cell in pits))
        )
        if reachable:
            return layout
    raise RuntimeError(f"no solvable TrapGrid layout found in {_MAX_TRIES} tries")


class TrapGridEnv(gym.Env[Any, np.int64]):
    """A grid world with a goal, lava, pits, a decoy exit and a step limit.

    Actions are ``Discrete(4)`` (0 up, 1 right, 2 down, 3 left; bumping a wall stays put). The
    observation is, for ``observation="grid"``, a flat float32 vector of the five channels
    :data:`CHANNELS` (``5 * size * size`` values in {0, 1}); for ``observation="position"``, the
    agent's cell index ``row * size + col`` in ``Discrete(size * size)`` (the layout is then not
    observed, so use it with ``num_layouts=1``).

    Layouts: with ``num_layouts=None`` every ``reset`` draws a fresh layout from the env's random
    generator; with an integer, a fixed pool of that many layouts is drawn once from
    ``layout_seed`` and every ``reset`` picks one (``options={"layout": i}`` chooses it). The
    layout's index is the episode's ``info["problem_id"]`` (``"layout-<i>"``; ``"trapgrid"`` for
    fresh layouts), which a MEDS wrapper uses as its bucket.

    At the last step ``info`` has ``is_success`` (bool) and ``failure_mode`` (one of
    :data:`OUTCOMES`; ``"success"`` for a success).

    Args:
        size: Side of the grid (>= 5).
        num_layouts: Size of the layout pool, or ``None`` for a fresh layout each episode.
        layout_seed: Seed of the layout pool.
        max_steps: Step limit (timeout); ``4 * size`` when ``None``.
        observation: ``"grid"`` or ``"position"``.
        goal_reward: Reward for reaching the goal.
        wrong_exit_reward: Reward for leaving by the decoy exit.
        trap_reward: Reward for lava and pits.
        num_lava: Lava cells per layout; ``size`` when ``None``.
        num_pits: Pits per layout.

    Example:
        >>> env = TrapGridEnv(num_layouts=4)
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, info["problem_id"].startswith("layout-")
        ((245,), True)
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        size: int = 7,
        num_layouts: int | None = None,
        layout_seed: int = 0,
        max_steps: int | None = None,
        observation: str = "grid",
        goal_reward: float = 1.0,
        wrong_exit_reward: float = 0.25,
        trap_reward: float = 0.0,
        num_lava: int | None = None,
        num_pits: int = 2,
        render_mode: str | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 5:
            raise InvalidArgumentError("size", "an integer >= 5", size)
        if num_layouts is not None and (
            isinstance(num_layouts, bool) or not isinstance(num_layouts, int) or num_layouts < 1
        ):
            raise InvalidArgumentError("num_layouts", "an integer >= 1 or None", num_layouts)
        if isinstance(layout_seed, bool) or not isinstance(layout_seed, int) or layout_seed < 0:
            raise InvalidArgumentError("layout_seed", "an integer >= 0", layout_seed)
        if max_steps is None:
            max_steps = 4 * size
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise InvalidArgumentError("max_steps", "an integer >= 1 or None", max_steps)
        if observation not in ("grid", "position"):
            raise InvalidArgumentError("observation", "one of 'grid', 'position'", observation)
        for name, value in (
            ("goal_reward", goal_reward),
            ("wrong_exit_reward", wrong_exit_reward),
            ("trap_reward", trap_reward),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidArgumentError(name, "a finite real number", value)
            if not np.isfinite(value):
                raise InvalidArgumentError(name, "a finite real number", value)
        lava_count = size if num_lava is None else num_lava
        if isinstance(lava_count, bool) or not isinstance(lava_count, int) or lava_count < 1:
            raise InvalidArgumentError("num_lava", "an integer >= 1 or None", num_lava)
        if isinstance(num_pits, bool) or not isinstance(num_pits, int) or num_pits < 0:
            raise InvalidArgumentError("num_pits", "an integer >= 0", num_pits)
        if lava_count + num_pits > size * size // 3:
            raise InvalidArgumentError(
                "num_lava + num_pits",
                f"at most a third of the grid ({size * size // 3} cells for size={size})",
                lava_count + num_pits,
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise InvalidArgumentError("render_mode", "None or 'ansi'", render_mode)
        self.size = size
        self.max_steps = max_steps
        self.observation_mode = observation
        self.goal_reward = float(goal_reward)
        self.wrong_exit_reward = float(wrong_exit_reward)
        self.trap_reward = float(trap_reward)
        self.num_lava = lava_count
        self.num_pits = num_pits
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(4)
        self.observation_space: spaces.Space[Any]
        if observation == "grid":
            self.observation_space = spaces.Box(
                0.0, 1.0, (len(CHANNELS) * size * size,), dtype=np.float32
            )
        else:
            self.observation_space = spaces.Discrete(size * size)
        self.layouts: tuple[TrapGridLayout, ...] | None = None
        if num_layouts is not None:
            pool_rng = np.random.default_rng(layout_seed)
            self.layouts = tuple(
                generate_layout(pool_rng, size, lava_count, num_pits) for _ in range(num_layouts)
            )
        self._layout: TrapGridLayout | None = None
        self._layout_id = "trapgrid"
        self._agent: Cell = (0, 0)
        self._steps = 0
        self._done = False

    @property
    def layout(self) -> TrapGridLayout:
        """The current episode's layout (after :meth:`reset`)."""
        if self._layout is None:
            raise gym.error.ResetNeeded("Call reset() before reading the layout.")
        return self._layout

    @property
    def agent(self) -> Cell:
        """The agent's current cell."""
        return self._agent

    def _observe(self) -> Any:
        layout = self.layout
        if self.observation_mode == "position":
            return np.int64(self._agent[0] * self.size + self._agent[1])
        grid = np.zeros((len(CHANNELS), self.size, self.size), dtype=np.float32)
        grid[0][self._agent] = 1.0
        grid[1][layout.goal] = 1.0
        for cell in layout.lava:
            grid[2][cell] = 1.0
        for cell in layout.pits:
            grid[3][cell] = 1.0
        grid[4][layout.wrong_exit] = 1.0
        return grid.reshape(-1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Start an episode on a layout (see the class docstring); ``options={"layout": i}``."""
        super().reset(seed=seed)
        choice = None if options is None else options.get("layout")
        if self.layouts is None:
            if choice is not None:
                raise InvalidArgumentError(
                    'options["layout"]', "absent when num_layouts=None (fresh layouts)", choice
                )
            self._layout = generate_layout(self.np_random, self.size, self.num_lava, self.num_pits)
            self._layout_id = "trapgrid"
        else:
            if choice is None:
                index = int(self.np_random.integers(len(self.layouts)))
            elif (
                isinstance(choice, (int, np.integer))
                and not isinstance(choice, bool)
                and 0 <= choice < len(self.layouts)
            ):
                index = int(choice)
            else:
                raise InvalidArgumentError(
                    'options["layout"]', f"an integer in [0, {len(self.layouts)})", choice
                )
            self._layout = self.layouts[index]
            self._layout_id = f"layout-{index}"
        self._agent = self._layout.start
        self._steps = 0
        self._done = False
        return self._observe(), {"problem_id": self._layout_id}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Move one cell; entering the goal, a trap or the decoy exit ends the episode."""
        if self._layout is None or self._done:
            raise gym.error.ResetNeeded("Call reset() before step() (the episode has ended).")
        if not self.action_space.contains(action):
            raise InvalidArgumentError("action", "an integer in [0, 4)", action)
        dr, dc = ACTIONS[int(action)]
        row = min(max(self._agent[0] + dr, 0), self.size - 1)
        col = min(max(self._agent[1] + dc, 0), self.size - 1)
        self._agent = (row, col)
        self._steps += 1
        outcome = self._layout.outcome_at(self._agent)
        terminated = outcome is not None
        truncated = not terminated and self._steps >= self.max_steps
        if truncated:
            outcome = "timeout"
        reward = 0.0
        if outcome == "success":
            reward = self.goal_reward
        elif outcome == "wrong_exit":
            reward = self.wrong_exit_reward
        elif outcome in ("lava", "pit"):
            reward = self.trap_reward
        info: dict[str, Any] = {"problem_id": self._layout_id}
        if outcome is not None:
            info["is_success"] = outcome == "success"
            info["failure_mode"] = outcome
            self._done = True
        return self._observe(), reward, terminated, truncated, info

    def render(self) -> str | None:
        """A text picture: ``A`` agent, ``G`` goal, ``~`` lava, ``O`` pit, ``X`` decoy exit."""
        if self.render_mode != "ansi":
            return None
        layout = self.layout
        rows = []
        for r in range(self.size):
            line = []
            for c in range(self.size):
                cell = (r, c)
                if cell == self._agent:
                    line.append("A")
                elif cell == layout.goal:
                    line.append("G")
                elif cell == layout.wrong_exit:
                    line.append("X")
                elif cell in layout.lava:
                    line.append("~")
                elif cell in layout.pits:
                    line.append("O")
                else:
                    line.append(".")
            rows.append("".join(line))
        return "\n".join(rows)


def failure_mode_counts(modes: list[str]) -> npt.NDArray[np.int64]:
    """Count outcomes in the order of :data:`OUTCOMES` (unknown names raise).

    Args:
        modes: ``info["failure_mode"]`` of finished episodes.

    Returns:
        (5,) int64 counts.
    """
    counts = np.zeros(len(OUTCOMES), dtype=np.int64)
    for mode in modes:
        if mode not in OUTCOMES:
            raise InvalidArgumentError("modes", f"outcomes among {OUTCOMES}", mode)
        counts[OUTCOMES.index(mode)] += 1
    return counts
