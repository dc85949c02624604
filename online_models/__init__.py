"""online_models"""
