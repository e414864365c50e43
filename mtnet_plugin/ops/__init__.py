"""mtnet_plugin.ops"""
