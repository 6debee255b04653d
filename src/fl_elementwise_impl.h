/* elementwise losses: filled in by the focal/binary issue */
