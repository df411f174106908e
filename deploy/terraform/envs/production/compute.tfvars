region              = "eu-west-1"
name                = "magento-production"
state_bucket        = "magento-production-terraform-state"
public_access_cidrs = ["203.0.113.0/24"]
namespace           = "magento"
system_node_count   = 3
tags = {
  environment = "production"
  managed-by  = "terraform"
}
