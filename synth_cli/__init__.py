"""`synth`, the command line: the top layer. It parses flags into job specs and calls the flows
(`flows/`), the job steps (`jobs/`) and the checks (`evaluation/`); nothing imports it."""
