from training.synth.cli import main

main()
