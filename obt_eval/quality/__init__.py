"""Automatic speech quality judges (DNSMOS, Distill-MOS, UTMOSv2) for stimuli and source recordings.

They let a researcher rank systems before recruiting raters and check, once ratings exist, how well the
machine agreed with the humans. DNSMOS and Distill-MOS ship their weights in their wheels and run offline.
"""
