"""The image sizes the network takes, as plain numbers (no torch), for whatever plans work around it (tiling)."""

# The Stacked DMSHN's level 3 sees H/4 and its encoder halves that twice more: sides must be multiples of 16
# (model.dmshn; the authors' code crops to them, model.inference pads to them).
SIZE_MULTIPLE = 16
