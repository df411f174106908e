region                   = "eu-west-1"
name                     = "magento-staging"
state_bucket             = "magento-staging-terraform-state"
aurora_min_acu           = 1
aurora_max_acu           = 4
aurora_instances         = 1
redis_sessions_node_type = "cache.t4g.small"
redis_cache_node_type    = "cache.t4g.medium"
tags = {
  environment = "staging"
  managed-by  = "terraform"
}
