"""`python -m concur_postback.cli`: the same as the `concur-postback` command."""

from concur_postback.cli import main

main()
