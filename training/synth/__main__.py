from training.synth.raycast import main

main()
