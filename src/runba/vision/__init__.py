"""runba.vision"""
