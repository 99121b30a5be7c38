"""Evaluation stage: bits per byte on any text, multiple choice by likelihood, fixed-seed samples."""
