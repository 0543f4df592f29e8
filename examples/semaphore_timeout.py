"""Semaphore acquisition with a timeout (Go's AcquireWithContext, README Advanced Usage)."""

import asyncio

from asynctasklib import Semaphore


async def do_work(sem: Semaphore, timeout: float) -> None:
    try:
        await sem.acquire(timeout=timeout)  # TimeoutError if no slot frees up in time
    except TimeoutError:
        print(f"Failed to acquire: no slot free within {timeout} s")
        return
    try:
        print("Acquired a slot, working")  # do work...
    finally:
        sem.release()


async def main() -> None:
    sem = Semaphore(5)
    await do_work(sem, timeout=2)  # a slot is free: acquired at once

    for _ in range(sem.limit):  # now hold every slot...
        await sem.acquire()
    await do_work(sem, timeout=0.05)  # ...and give up after the timeout
    if not await sem.try_acquire_with_timeout(0.05):  # the same, without an exception
        print("try_acquire_with_timeout: still busy")


if __name__ == "__main__":
    asyncio.run(main())
