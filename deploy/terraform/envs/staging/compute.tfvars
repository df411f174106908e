region              = "eu-west-1"
name                = "magento-staging"
state_bucket        = "magento-staging-terraform-state"
public_access_cidrs = ["203.0.113.0/24"]
namespace           = "magento-staging"
system_node_count   = 2
tags = {
  environment = "staging"
  managed-by  = "terraform"
}
