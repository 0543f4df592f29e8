"""Basic task execution: one task with automatic retries (Go README, Quick Start)."""

import asyncio

from asynctasklib import Definition, Run, Task


async def fetch_user_data(run: Run) -> None:
    print(f"Executing task {run.id}")
    # Your business logic here


async def main() -> None:
    # Create a task with automatic retries
    task: Task[None] = Task(
        Definition(id="fetch-user-data", task_fn=fetch_user_data, max_retries=3, max_duration=30)
    )

    task.go()  # start it on the running event loop
    await task.wait()  # wait for completion; never raises the task's error

    if task.is_failed():
        print(f"Task failed: {task.error}")
    else:
        print("Task completed successfully")


if __name__ == "__main__":
    asyncio.run(main())
