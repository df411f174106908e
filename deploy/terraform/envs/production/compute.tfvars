region              = "eu-west-1"
name                = "magento-production"
state_bucket        = "magento-production-terraform-state"
public_access_cidrs = ["203.0.113.0/24"]
namespace           = "magento"
# The operators' SSO role: cluster admin through an EKS access entry (API mode has no aws-auth).
cluster_admin_arns = ["arn:aws:iam::222222222222:role/AWSReservedSSO_AdministratorAccess"]
system_node_count  = 3
tags = {
  environment = "production"
  managed-by  = "terraform"
}
