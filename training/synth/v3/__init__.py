"""Generator v3: VIDIT-like scenes path traced by Mitsuba 3 under VIDIT's point light (needs the train extra).

scenes draws a scene (what is where, made of what, seen from where) from meshes (numpy triangle
meshes: boxes, frustums, rocks, leaves, terrain) and textures (albedo photographs and procedural
patterns); render turns it into Mitsuba's and renders the pair; write renders a whole set in
parallel processes and resumes an interrupted one.
"""
