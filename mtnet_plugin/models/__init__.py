"""mtnet_plugin.models"""
