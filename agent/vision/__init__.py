"""Vision: frames in, results out. Preprocessing (undistortion, region of
interest, resize), the presence gate and scheduler, ear tags, and later body
condition and milk colour. Imports records, config and models only."""
