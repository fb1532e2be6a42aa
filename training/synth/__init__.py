"""Synthetic VIDIT track-1 pairs: random scenes, each rendered under a North/6500 K light (input) and an East/4500 K one (target).

`python -m training.synth` (cli) writes a set with one of three generators. What they share is in
layout: the random stream of each scene (seed, split, index), the two lights, the OUT/SPLIT/input|target/
ImageNNN.png files and meta.json. Generators v1 and v2 (raycast) ray cast spheres, boxes and cylinders
with torch and shade them with a distant sun and an ambient term; generator v3 (the v3 package: scenes,
meshes, textures, render, write) builds VIDIT-like meshes with textures and path traces them with Mitsuba
under VIDIT's own point light. Every generator is deterministic: the same arguments give the same bytes.
"""
