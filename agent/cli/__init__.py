"""The agent's command line (`app`), what its entry points share (`runtime`) and its benchmarks
(`bench`)."""
