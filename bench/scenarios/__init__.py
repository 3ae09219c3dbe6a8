"""Scenarios shared by the benchmarks and the tests that prove the same promises (outside tests/ so the bench needs
no test package): the soak under faults and the real `qcluster` child it runs against."""
