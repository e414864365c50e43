"""mtnet_plugin.engine"""
