"""runba.optim"""
