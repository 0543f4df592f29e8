"""Error group: the first failure cancels the rest and is raised (Go README, Quick Start)."""

import asyncio

from asynctasklib import Definition, Run, WorkerPool


async def succeed(run: Run) -> None:
    return None


async def fail(run: Run) -> None:
    raise RuntimeError("simulated error")


async def main() -> None:
    tasks: list[Definition[None]] = [
        Definition(id="task-1", task_fn=succeed),
        Definition(id="task-2", task_fn=succeed),
        Definition(id="task-3", task_fn=fail),
    ]

    async with WorkerPool(5) as pool:
        # The first error cancels all remaining tasks of the group, then is raised.
        try:
            await pool.submit_with_err_group(tasks)
        except Exception as err:
            print(f"Error encountered: {err}")


if __name__ == "__main__":
    asyncio.run(main())
