"""A task's states, and what each says (asynctasklib._state)."""

from __future__ import annotations

import pytest

from asynctasklib import Definition, State, Task, blocking
from asynctasklib._state import StatePredicates

PREDICATES = [name for name in vars(StatePredicates) if name.startswith("is_")]


def test_there_is_a_predicate_per_state_and_two_for_groups_of_them() -> None:
    assert sorted(PREDICATES) == sorted(
        [f"is_{state.name.lower()}" for state in State] + ["is_end", "is_in_progress"]
    )


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_both_faces_answer_as_the_async_task_does(state: State) -> None:
    task: Task[None] = Task(Definition())
    task._state = state  # (every state, without running the task through them)
    handle = blocking.Task(task)
    for name in PREDICATES:
        assert getattr(handle, name)() is getattr(task, name)(), name
    assert handle.state is state
    assert [name for name in PREDICATES if getattr(handle, name)()] == [
        f"is_{state.name.lower()}",
        *(["is_end"] if state >= State.DONE else []),
        *(["is_in_progress"] if state in (State.PENDING, State.STARTED) else []),
    ]


def test_the_predicates_are_not_written_again_in_the_blocking_face() -> None:
    for name in PREDICATES:
        assert getattr(blocking.Task, name) is getattr(StatePredicates, name), name


def test_a_handle_without_a_state_says_so() -> None:
    with pytest.raises(NotImplementedError):
        StatePredicates().is_done()
