//! Vigil's guard layer: assembles each observing release's window and acts on its verdict.
