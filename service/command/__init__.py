"""The offline `relight` command: folders or files of photos relit in one run, three ways. `main` parses the
command line and picks the path; `local` runs the service's engine in this process; `server` sends the files to
a running relight service (`--server`); `ray_job` spreads the same local work over a Ray cluster with Ray Data
(`--ray`, the `ray` extra). `tasks` is what all three share: a file's output name and format, the write that
never leaves half a file, and the report of the files that failed."""
