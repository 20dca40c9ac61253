"""`python -m synth_cli ...` (and `accelerate launch -m synth_cli train ...`)."""

from synth_cli.main import main

main()
