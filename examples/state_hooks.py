"""State hooks: callbacks on a task's lifecycle (Go README, Quick Start)."""

import asyncio
from datetime import datetime

from asynctasklib import Definition, Run, StateHooks, Task, when_done, when_failed, when_started


def rfc3339(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")  # `when` is in UTC


async def work(run: Run) -> None:
    return None


async def main() -> None:
    hooks = StateHooks(
        when_started(lambda task_id, when: print(f"[{rfc3339(when)}] Task {task_id} started")),
        when_done(lambda task_id, when: print(f"[{rfc3339(when)}] Task {task_id} completed")),
        when_failed(
            lambda task_id, when, err: print(f"[{rfc3339(when)}] Task {task_id} failed: {err}")
        ),
    )

    task: Task[None] = Task(Definition(id="monitored-task", hooks=hooks, task_fn=work))
    task.go()
    await task.wait()


if __name__ == "__main__":
    asyncio.run(main())
