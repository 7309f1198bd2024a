"""Unit and representation quality metrics: ABX, purity/PNMI, silhouette, bitrate, speaker and cross-lingual."""
