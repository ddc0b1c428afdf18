"""Data parallelism over a `('data',)` device mesh (`sharding`) and several processes
(`multihost`: start-up, agreement, the collective watchdog)."""
