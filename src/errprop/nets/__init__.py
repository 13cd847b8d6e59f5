"""The networks: :mod:`errprop.nets.mlp` (vectors), :mod:`errprop.nets.unet` (images) and a
diffusers ``UNet2DModel`` (:mod:`errprop.diffusers_io`), built by :func:`errprop.builders.build_net`."""

#: The networks, by config name (``model.net``).
NETS = ("mlp", "unet", "diffusers")
