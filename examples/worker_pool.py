"""Worker pool: 100 tasks through 10 concurrent workers (Go README, Quick Start)."""

import asyncio

from asynctasklib import Definition, Run, WorkerPool


async def process(run: Run) -> None:
    print(f"Processing task {run.id}")
    await run.sleep(0.002)  # simulated I/O (100 ms in the Go example)


async def main() -> None:
    # A worker pool with 10 concurrent workers; leaving the block waits for every task.
    async with WorkerPool(10) as pool:
        for i in range(100):
            definition: Definition[None] = Definition(id=f"task-{i}", task_fn=process)
            await pool.submit(definition)  # waits while all 10 workers are busy

        await pool.wait()  # wait for all tasks to complete

        stats = pool.stats()
        print(f"Completed: {stats.done}, Failed: {stats.failed}")


if __name__ == "__main__":
    asyncio.run(main())
