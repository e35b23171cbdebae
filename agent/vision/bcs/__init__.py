"""Body condition scoring from a top-view camera: segment, measure, score, trend."""
