"""Synthetic VIDIT track-1 pairs: random scenes rendered under a North/6500 K light (input) and an East/4500 K one.

`python -m training.synth` (cli) writes a set with one of three generators. What they all share is
in layout: the random stream of each scene (seed, split, index), the two lights, the files
OUT/SPLIT/input|target/ImageNNN.png and meta.json. Generators v1 and v2 (raycast) ray cast spheres,
boxes and cylinders with torch and shade them under a distant sun with an ambient term; generator v3
(the v3 package: scenes, meshes, textures, render, write) builds VIDIT-like textured meshes and path
traces them with Mitsuba under VIDIT's own point light. The same arguments give the same bytes.
"""
