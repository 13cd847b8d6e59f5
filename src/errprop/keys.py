"""Every random stream's key, in one table.

errprop draws all its randomness from per-sample streams (:mod:`errprop.noise`) named by a seed and
a key, so that one use never shifts another's draws: a sample never depends on its batch, and a
measurement never depends on which others ran. The values are fixed — changing one changes the
numbers of every existing seed. ``KEY_TRAIN_STEP`` and ``KEY_STEP`` share a number but never a
stream: the first is always hashed with the training step as a further key.
"""

# training (errprop.train, errprop.builders)
KEY_LOSS = 0x1055  # per-sample noise of the training loss (σ, ε, SA's windows, EP's rollouts)
KEY_TRAIN_STEP = 0x57E9  # the torch seed of training step k (dropout), with k as a further key
KEY_INIT = 0x1417  # the initial weights
KEY_BATCH = 0xDA7A  # x0 of training sample j drawn from a mixture
KEY_PERM = 0x9E4B  # the epoch permutation of an image data set
KEY_FLIP = 0xF119  # random horizontal flips
# data
KEY_MIXTURE = 0x6D6D  # GaussianMixture.sample_n
# measurements (errprop.diagnostics, errprop.analytic_dpm, errprop.optimal_grid, errprop.study)
KEY_DATA = 0xD1A6  # x0 draws of the reference data
KEY_DATA_NOISE = 0xD1A7  # the noise that takes reference data to σ
KEY_FLOOR = 0xF100  # the independent second data set behind every floor
KEY_FLOOR_NOISE = 0xF101
KEY_STEP = 0x57E9  # draws from p_θ(x̂'|x̂) in the modular error
KEY_BRIDGE = 0xB21D  # draws from the forward bridge q(x̂'|x̂, x0) in the optimal grid's path KL
KEY_START = 0x5EED  # the standard normal w of the budget's chain starts (and the prior's draws)
KEY_START_DATA = 0x5EEE  # the x0 of the exact start x0 + σ w (the budget; the path KL's prior term)
KEY_GAMMA = 0x6A3A  # Analytic-DPM's Γ estimate
# a mixture's reference set and the floor's second data set (evaluate, study, optimal_grid) are
# GaussianMixture.sample_n(n, seed + offset)
REF_OFFSET, FLOOR_OFFSET = 10_000, 20_000
