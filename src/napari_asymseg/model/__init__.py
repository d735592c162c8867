"""What a model is: networks and their plan, losses, regularisers, SAM, checkpoints, bundles and
loading any of them safely."""
