region              = "eu-west-1"
name                = "magento-staging"
state_bucket        = "magento-staging-terraform-state"
public_access_cidrs = ["203.0.113.0/24"]
namespace           = "magento-staging"
# The operators' SSO role: cluster admin through an EKS access entry (API mode has no aws-auth).
cluster_admin_arns = ["arn:aws:iam::111111111111:role/AWSReservedSSO_AdministratorAccess"]
system_node_count  = 2
tags = {
  environment = "staging"
  managed-by  = "terraform"
}
